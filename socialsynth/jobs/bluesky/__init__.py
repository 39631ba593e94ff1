"""Seed 002 (BluePrint): Bluesky users from Jetstream events, clustered into personas.

Modules:
- ``events``: find input files (``<root>/DD/HH/*`` or any folder/file of JSON lines, plain/.gz/.zst) and stream
  Jetstream envelopes as small typed :class:`~socialsynth.jobs.bluesky.events.Event` records, counting what is skipped.
- ``users``: fold events into per-user data (posts, replies, quotes, likes, ... deletes matched by record key),
  mergeable and JSON-serialisable, and build conversation chains.
- ``language``, ``cluster``: the English filter; user clustering with reports and a map.
- ``ignored``, ``output``: ignored-message selection; the per-cluster files in the seed's schema.
- ``pipeline``: the whole job behind ``cluster_users.py`` (with the parsed-users cache).
- ``instruct``: instruction data per cluster (``build_instruct_dataset.py``), LLM answers resumable chunk by chunk.
- ``config``: the declared settings of both scripts (:class:`ClusterConfig`, :class:`InstructConfig`); ``cli``:
  their ``main_cluster`` / ``main_instruct``.
"""
