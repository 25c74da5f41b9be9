# evad_mm: `make demo` and `make test` work from a fresh clone.
PYTHON ?= python3.11
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.evad_mm-installed
PYTEST_ARGS ?=

.PHONY: install test demo toy-data clean

install: $(STAMP)

$(STAMP): tools/install.sh setup.cfg pyproject.toml requirements/constraints.txt requirements/runtime.txt requirements/tests.txt requirements/deploy.txt
	VENV=$(VENV) PYTHON=$(PYTHON) bash tools/install.sh
	touch $@

# `EVAD_MM_CUDA=0|1 make install` chooses mmcv's ops again: always run the
# script then (it skips what is already installed as asked).
ifneq ($(EVAD_MM_CUDA),)
$(STAMP): FORCE
endif
.PHONY: FORCE
FORCE:

test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

demo: install
	VENV=$(VENV) bash tools/toy_demo.sh

clean:
	rm -rf work_dirs .pytest_cache
