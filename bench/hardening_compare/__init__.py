"""bench/hardening_compare: Lynis hardening index of this project's hardening against two public anchors.

On fresh, identical lab hosts (one per variant, each running the same estate service), apply
`untouched` (nothing), `devsec` (dev-sec/ansible-collection-hardening: os_hardening + ssh_hardening),
`lockdown` (ansible-lockdown/DEBIAN12-CIS) and `ours` (playbooks/harden.yml), then audit every host with
Lynis and check that the service, a fresh SSH login and systemd still work. See bench/README.md.

Modules: `parsing` (pure parsers of Lynis, oscap, ansible-playbook and systemctl output), `variants`
(what each variant runs, the anchors' documented overrides, the reference figures), `report` (the table
and the JSON), `lab` (playbook runs, probes on the hosts, teardown), `cli` (the benchmark itself).
"""
