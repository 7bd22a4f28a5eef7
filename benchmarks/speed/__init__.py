"""Speed and memory: the model, the face pipeline, generate, build, scan, provenance; the GPU check script."""
