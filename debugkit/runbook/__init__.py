"""Incident runbooks: model, loading (hardened YAML), variables, execution, rendering and
report files, one module each. Everything up to `execute` is pure, so a bad runbook is
refused before any sidecar exists. Bundled runbooks live in bundled/."""
