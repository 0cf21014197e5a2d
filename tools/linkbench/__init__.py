"""linkbench: colvlm over a shaped, lossy link (`sudo python -m tools.linkbench`)."""
