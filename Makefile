# Two commands do all the set-up on a fresh Debian machine (see README):
#   make demo   system packages + Python environment, then files the bundled sample batch into ./var/
#   make test   the same set-up, then the whole test suite
# Both are idempotent: a second run only checks that everything is in place.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# LibreOffice Writer without GUI, its Python-UNO bridge (the warm converter), CJK fonts (Noto CJK; HanaMin
# for the rare characters of real names, CJK Extension B, that Noto lacks), poppler (PDF to pixels in tests
# and audits), venv support for Debian's python3, zbar-tools (tests read the verification QR code back),
# SoftHSM2 (a PKCS#11 token for the HSM signing tests), slapd and ldap-utils (the LDAP identity tests start
# their own slapd on loopback; the system's slapd service, which the package may start, is not used),
# Chromium (the desk's browser tests drive Debian's build through Playwright; Playwright's own browser
# download is never used).
APT_PACKAGES := libreoffice-writer-nogui python3-uno fonts-noto-cjk fonts-hanazono poppler-utils python3-venv postgresql zbar-tools softhsm2 slapd ldap-utils chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test system env lint bench clean

demo: system env
	@mkdir -p var
	@# a SPECIMEN signing certificate (样本, not for real use) so that the demo's documents are signed
	$(BIN)/issuance signer specimen
	$(BIN)/issuance run examples/sample-batch/batch.jsonl; \
	  status=$$?; [ $$status -le 1 ] || exit $$status
	@echo "The sample's six bad records are rejected on purpose (see the report). Filed under var/archive/:"
	$(BIN)/issuance find --branch 510107
	@echo "Demo users of the desk (样本 SPECIMEN), one per role; their one-time passwords:"
	@for role in clerk supervisor auditor operator admin; do \
	  $(BIN)/issuance users add demo-$$role --role $$role --display-name "演示 demo $$role" --generate-password 2>/dev/null \
	  | grep "one-time" || $(BIN)/issuance users passwd demo-$$role --generate-password | grep "one-time"; \
	done
	@echo "Next: $(BIN)/issuance get PPA20260127026000003 --by demo-clerk --purpose demo -o policy.pdf"
	@echo "The desk: $(BIN)/issuance serve, then open http://127.0.0.1:8080/ and sign in as demo-clerk"

test: system env
	$(BIN)/python -m pytest -q -p no:cacheprovider

system:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@# compiled now, as pip compiles an installed package: each command then starts ~0.15 s sooner
	@# (also where PYTHONDONTWRITEBYTECODE keeps Python from saving what it compiles)
	$(BIN)/python -m compileall -q core stamps pipeline archive watchers usecases desk cli
	@touch $@

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: system env
	$(BIN)/python bench/render_bench.py

clean:
	rm -rf var .pytest_cache
