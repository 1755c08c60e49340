# Fresh machine:  make demo   (install, then rerank the bundled sample with the embedded default model)
#                 make test   (install, then run the whole test suite)
.PHONY: install demo test

install:
	scripts/install.sh

demo: install
	.venv/bin/grouprank demo

test: install
	.venv/bin/python -m pytest
