# meshgrpc: install, test, regenerate the API, benchmark.
PY      := python3
VENV    := .venv
VPY     := $(VENV)/bin/python

.PHONY: install test test-codec-slow etcd browser protos demo bench clean

install: $(VENV)/.installed

# The codec's compiled modules are built from its sources at install time
# (setup.py): changing a source rebuilds them, or the stale build would be loaded.
$(VENV)/.installed: pyproject.toml setup.py $(wildcard meshgrpc/codec/*.py meshgrpc/codec/*.pxd)
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[dev]'
	touch $@

# The whole suite on the compiled codec (the etcd store's tests on a real 3-member
# cluster of Debian's etcd-server, the dashboard's in Debian's headless chromium);
# then, one at a time with nothing else running, the tests that compare a client's
# latency with and without an attack (marker `alone`: a neighbouring test's
# processes would be measured too); then the codec's, the relay's and grpcwire's
# tests on the codec's plain Python modules (MESHGRPC_CODEC_PURE=1), which run
# wherever no compiler exists.
test: install etcd browser
	$(VPY) -m pytest -q -n 2 -m "not alone" tests
	$(VPY) -m pytest -q -m alone tests
	MESHGRPC_CODEC_PURE=1 $(VPY) -m pytest -q -n 2 tests -k "codec or relay or edge_malformed or grpcwire"

# The codec's property tests with 10x the examples (HYPOTHESIS_EXAMPLES), compiled and pure.
test-codec-slow: install
	HYPOTHESIS_EXAMPLES=20000 $(VPY) -m pytest -q -n 2 -o timeout=0 tests -k codec
	MESHGRPC_CODEC_PURE=1 HYPOTHESIS_EXAMPLES=20000 $(VPY) -m pytest -q -n 2 -o timeout=0 tests -k codec

etcd:
	@command -v etcd >/dev/null || [ -x /usr/bin/etcd ] || { apt-get install -y etcd-server \
		|| { apt-get update && apt-get install -y etcd-server; }; } \
		|| { echo "make: cannot install etcd-server (run as root)"; exit 1; }

# The dashboard's test drives Debian's headless chromium through its chromedriver.
browser:
	@{ command -v chromium && command -v chromedriver; } >/dev/null || { apt-get install -y chromium chromium-driver \
		|| { apt-get update && apt-get install -y chromium chromium-driver; }; } \
		|| { echo "make: cannot install chromium and chromium-driver (run as root)"; exit 1; }

# Regenerate generated/ from protos/ (stubs with .pyi typing). OUT overrides the target folder.
OUT ?= generated
protos: install
	$(VPY) -m meshgrpc.tools.genprotos $(OUT)

# A control plane, a proxy, three greeter backends (one slow) and a canary, with a
# live table of where the calls go. Ctrl-C stops it all. DURATION=S stops after S seconds.
demo: install
	$(VENV)/bin/meshgrpc demo $(if $(DURATION),--duration $(DURATION))

# Direct vs meshgrpc (1 and 2 workers) vs the C proxies users would pick instead
# (nghttpx, haproxy, nginx), proxyless, control-plane scale, proxy memory and
# profile (about 20 minutes; BENCH_ARGS=--quick for about three), then the balancing
# policies head to head (bench/balancing.py, about 15 minutes; BALANCING_ARGS=--quick
# for about three). As root it
# installs what it runs from Debian: h2load (required) and the comparison proxies
# (each one missing is skipped). BENCH_DEBS pairs each package with its command.
BENCH_DEBS := nghttp2-client:h2load nginx:nginx nghttp2-proxy:nghttpx haproxy:haproxy
bench: install etcd
	@missing=""; for pair in $(BENCH_DEBS); do command -v $${pair#*:} >/dev/null || [ -x /usr/sbin/$${pair#*:} ] \
		|| missing="$$missing $${pair%%:*}"; done; \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && { apt-get install -y $$missing \
		|| { apt-get update && apt-get install -y $$missing; }; }; } \
		|| echo "bench: cannot install$$missing (run as root): h2load is required; a missing proxy is skipped"
	$(VPY) -m pip install --quiet -e '.[bench]'
	PYTHONPATH=. $(VPY) -m bench.run $(BENCH_ARGS)
	PYTHONPATH=. $(VPY) -m bench.balancing $(BALANCING_ARGS)

clean:
	rm -rf $(VENV) .meshgrpc
