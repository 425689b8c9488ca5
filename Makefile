# avgrid: the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY ?= python3.11
VENV := .venv
PYBIN := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KAFKA := deploy/kafka/kafka.sh
export AVGRID_KAFKA_PORT ?= 9092
export AVGRID_KAFKA_BOOTSTRAP ?= 127.0.0.1:$(AVGRID_KAFKA_PORT)
# Debian packages the tests and benchmarks need: ffmpeg CLI (benchmark baseline, RTSP/UDP/HLS
# publishers), espeak-ng (speech clips), Java + Maven (Kafka broker), GStreamer's RTSP server.
# chromium renders the report and the live page in tests; fluidsynth + a small General MIDI soundfont
# play real instrument samples for the music tests.
APT_PKGS := ffmpeg espeak-ng maven openjdk-17-jre-headless python3-gi gir1.2-gst-rtsp-server-1.0 \
            gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav \
            chromium fluidsynth timgm6mb-soundfont
APT_BINS := ffmpeg espeak-ng mvn java chromium fluidsynth

.PHONY: help venv sysdeps media demo test test-fast kafka-up kafka-down bench clean

help:
	@echo "make demo       set up, generate a sample clip offline, annotate it (Parquet in ./avgrid-out)"
	@echo "make test       set up, start the local Kafka broker if needed, run the test suite"
	@echo "make kafka-up   start the local Kafka broker (prints its bootstrap address)"
	@echo "make kafka-down stop it"
	@echo "make bench      run every benchmark (python -m benchmarks.NAME)"

# Installs missing Debian packages (root, as on CI). Skipped when everything is present.
sysdeps:
	@missing=""; for b in $(APT_BINS); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	dpkg -s gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-ugly gstreamer1.0-libav python3-gi timgm6mb-soundfont >/dev/null 2>&1 || missing="$$missing gst-rtsp/soundfont"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (missing:$$missing)"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(APT_PKGS) >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@test -x $(PYBIN) || $(PY) -m venv $(VENV)
	$(PYBIN) -m pip install -q --upgrade pip
	$(PYBIN) -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

# Real footage and sounds from Debian packages (pipeline/knowntruth/debian.py), fetched once into .cache/debian
media: venv sysdeps
	@$(PYBIN) -m pipeline.knowntruth.debian fetch

kafka-up: venv sysdeps
	@AVGRID_PYTHON=$(abspath $(PYBIN)) $(KAFKA) up

kafka-down:
	@$(KAFKA) down

demo: venv sysdeps media
	$(PYBIN) -m pipeline.demo

# Starts the broker only when none is running, and stops only the one it started.
test: venv sysdeps media
	@started=0; \
	if ! $(KAFKA) status >/dev/null 2>&1; then AVGRID_PYTHON=$(abspath $(PYBIN)) $(KAFKA) up >/dev/null && started=1; fi; \
	rc=0; $(PYBIN) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$started = 1 ]; then $(KAFKA) down; fi; \
	if [ $$rc = 5 ]; then echo "pytest collected no tests"; fi; \
	exit $$rc

bench: venv sysdeps media
	@for b in decode encoders fusion sinks e2e quality operators report; do \
	  if [ -f benchmarks/$$b.py ]; then $(PYBIN) -m benchmarks.$$b || exit $$?; fi; done

clean:
	rm -rf $(VENV) avgrid-out .pytest_cache build *.egg-info
