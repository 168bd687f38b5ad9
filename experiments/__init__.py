"""The litbench CLI and the machinery that turns YAML specs into tracked runs."""
