# enp front door. Two commands do all set-up on a fresh Debian 12 machine (as root):
#   make drill   - install what is needed, build the lab estate, run the attack-and-recovery drill
#   make test    - lint, unit tests, lab integration tests, molecule scenarios (what CI runs)
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
BIN := $(VENV)/bin
INVENTORY ?= inventories/lab
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_DEPRECATION_WARNINGS := False

.PHONY: help setup lint unit integration molecule test drill lab-up lab-down lab-stop lab-status lab-clean bench bench-redeploy bench-hardening bench-baseline bench-restore bench-drill mirror-lock mirror release site seed redeploy harden firewall backup restore lab-attack

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## Install Debian packages and the pinned Python venv (idempotent, fast when nothing changed)
	@scripts/setup.sh

lint: setup ## ruff and ansible-lint (production profile)
	@echo "[lint] ruff"; $(BIN)/ruff check . && $(BIN)/ruff format --check --quiet .
	@echo "[lint] ansible-lint (production profile)"; $(BIN)/ansible-lint --offline -q

unit: setup ## Unit tests (no root, no lab)
	@echo "[unit] pytest tests/unit"; $(BIN)/pytest -q tests/unit

integration: setup ## Integration tests on real lab hosts (root)
	@echo "[integration] pytest -m integration tests/integration"; $(BIN)/pytest -q -m integration tests/integration

molecule: setup ## molecule scenarios (all, or changed + a rotating slice when they do not fit CI time)
	@scripts/molecule-ci.sh

test: lint unit integration molecule ## Everything CI runs
	@echo "[test] all green"

lab-up: setup ## Build and boot the lab estate of $(INVENTORY)
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/lab_up.yml

lab-down: setup ## Remove every host, bridge, mount and process the lab created
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/lab_down.yml -e enp_lab_down_confirm=down

lab-stop: setup ## Shut the lab hosts down, keeping their disks (lab-up boots them again)
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/lab_stop.yml

lab-status: setup ## Show lab hosts, bridges and services
	$(BIN)/enp lab status -i $(INVENTORY)

lab-clean: lab-down ## lab-down, then delete cached images and packages too (refused while any lab runs)
	@if grep -q " overlay " /proc/mounts && grep " overlay " /proc/mounts | grep -q "lowerdir=$${ENP_CACHE_DIR:-$$HOME/.cache/enp}"; then \
	  echo "lab-clean: another lab (molecule, bench or tests) still runs on the cached image; stop it first." >&2; exit 3; fi
	rm -rf "$${ENP_CACHE_DIR:-$$HOME/.cache/enp}" .lab

mirror-lock: setup ## Re-lock baseline/packages.lock against the golden image and Debian now (review the diff, commit)
	$(BIN)/ansible-playbook playbooks/mirror_lock.yml --diff

mirror: setup ## Build the signed baseline mirror from the lock into .lab/mirror (strict: a stale lock fails)
	$(BIN)/ansible-playbook playbooks/mirror_build.yml

release: setup ## Build the civic-services release artifact into dist/ (deterministic, with .sha256)
	$(BIN)/python scripts/build_release.py

site: release ## Build the estate's services with playbooks/site.yml (after lab-up; second run changes nothing)
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/site.yml

SIZE ?= small
seed: setup ## Load the synthetic 413-ULB data set (SIZE=small|large) and verify its manifest on every app server
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/seed.yml -e app_seed_size=$(SIZE)

harden: setup ## Harden every estate host (os_hardening, ssh_hardening) and collect the compliance report
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/harden.yml

firewall: setup ## Zone-matrix nftables firewall on the gateway, then every host (lockout-safe; CHECK=1 previews with --diff)
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/firewall.yml $(if $(CHECK),--check --diff)

backup: setup ## Attacker-resistant backups pulled by the backup server (after site and seed; CHECK=1 previews)
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/backup.yml $(if $(CHECK),--check --diff)

restore: setup ## Restore the latest CLEAN point: PLAN=1 explains the choice only; CONFIRM=restore restores (INCIDENT=ISO time)
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/restore.yml $(if $(PLAN),-e enp_restore_plan_only=true) \
	  $(if $(CONFIRM),-e enp_restore_confirm=$(CONFIRM)) $(if $(INCIDENT),-e enp_incident_time=$(INCIDENT))

lab-attack: setup ## Simulated ransomware on the LAB only (documents, database, persistence); CONFIRM=attack-the-lab
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/lab_attack.yml $(if $(CONFIRM),-e enp_attack_confirm=$(CONFIRM))

redeploy: setup ## Rolling redeploy of release VERSION (dist/civic-services-VERSION.tar.gz), one app server at a time
	@test -n "$(VERSION)" || { echo "redeploy: give the release, e.g. make redeploy VERSION=1.0.1 (build it with scripts/build_release.py --version 1.0.1)" >&2; exit 2; }
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/redeploy.yml -e enp_app_version=$(VERSION)

bench: setup ## Benchmarks (bench/lab_startup)
	$(BIN)/python bench/lab_startup.py

bench-redeploy: setup ## Rolling redeploy under load on the lab estate: rollout time, failed requests (after make site)
	$(BIN)/python bench/redeploy.py

bench-hardening: setup ## Lynis index after each hardening (untouched/devsec/lockdown/ours); DEVSEC=, LOCKDOWN= checkouts
	$(BIN)/python bench/hardening_compare.py $(if $(DEVSEC),--devsec $(DEVSEC)) $(if $(LOCKDOWN),--lockdown $(LOCKDOWN)) --json

bench-baseline: setup ## Baseline capture/verify vs AIDE init/check on a full host and one with 1M small files (FILES=N)
	$(BIN)/python bench/baseline.py $(if $(FILES),--files $(FILES)) --json

bench-restore: setup ## Restore throughput (DB base + WAL replay, documents) vs raw copy, and RPO when the primary dies (SIZE=large|small)
	$(BIN)/python bench/restore.py --size $(or $(SIZE),large)

bench-drill: setup ## RTO per phase and in total of the newest drill (SIZE=small|large RUN=1 runs the drill first)
	$(BIN)/python bench/drill.py $(if $(RUN),--size $(SIZE))

drill: setup ## Build the lab estate, attack it, enp recover, print RTO/RPO and the report (SIZE=small|large, unattended)
	$(BIN)/python scripts/drill.py --size $(SIZE)
