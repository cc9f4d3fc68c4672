"""Serving: a registered model behind Ray Serve on loopback.

Pure (no Ray): :mod:`~raymlops.serve.request` (parsing and validation),
:mod:`~raymlops.serve.routing` (the traffic table: champion, challenger, canary / shadow),
:mod:`~raymlops.serve.metrics` (Prometheus counters summed over replicas),
:mod:`~raymlops.serve.handoff` (the bounded, asynchronous monitor hand-off, by role and shard),
:mod:`~raymlops.serve.feedback` (ground-truth labels posted by request id),
:mod:`~raymlops.serve.settings`, :mod:`~raymlops.serve.throughput` (HAProxy ingress, loopback-safe).
Ray adapters: :mod:`~raymlops.serve.app` (the ``ModelServer`` deployment),
:mod:`~raymlops.serve.control` (the route's control actor), :mod:`~raymlops.serve.deploy`,
:mod:`~raymlops.serve.traffic` (champion / challenger on live deployments, with audit records),
:mod:`~raymlops.serve.builder` (``serve deploy`` / KubeRay import path).
"""
