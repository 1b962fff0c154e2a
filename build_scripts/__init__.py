"""Build-time tooling: fetch and build the pinned llama.cpp, generate test models."""
