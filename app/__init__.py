"""The web side of rlhf-loop: storage, REST API and the rater's pages. Never imports torch or gymnasium."""
