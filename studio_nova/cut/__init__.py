"""The cut: reading the editor's timeline into shots (ingest), naming them, planning their
chunks and keyframes, and writing the conformed cut back for the NLE."""
