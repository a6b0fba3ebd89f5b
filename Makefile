# Every target creates .venv and installs the pinned requirements first; nothing else is needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo run test soak bench bench-limit clean

$(STAMP): requirements.txt requirements-dev.txt requirements-cli.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m scripts.demo
	$(PY) -m scripts.demo_backfill

run: $(STAMP)  # ARM 8089, identity 8090, Service Bus 5672, functions stand-in 7071; Ctrl-C stops it
	$(PY) -m emulators.stack

test: $(STAMP)
	$(PY) -m pytest

soak: $(STAMP)  # WIRE=1: 2,000 events through the local Service Bus and the host stand-in
	$(if $(WIRE),$(PY) -m scripts.soak --wire --events 2000 --seed 1,$(PY) -m scripts.soak --events 5000 --workers 16 --seed 1)

# Per-event cost, concurrency, backfill, then throughput at ARM's write limit (4 instances x 16 threads on one
# throttled identity: pacing on / off / the SDK). Writes bench/out/; UPDATE_DOCS=1 rewrites the tracked results and docs/.
bench: $(STAMP)
	$(PY) -m bench $(if $(UPDATE_DOCS),--update-docs)
	$(PY) -m bench.at_limit $(if $(UPDATE_DOCS),--update-docs)

# The at-the-limit section alone.
bench-limit: $(STAMP)
	$(PY) -m bench.at_limit

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis outcomes.jsonl soak-report.json bench/out
