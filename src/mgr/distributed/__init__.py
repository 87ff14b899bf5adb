"""Growing past one machine: sharded extraction on Dask distributed, multi-device training.

- :mod:`mgr.distributed.engine` -- where tasks run: inline (1 worker), a local Dask cluster of
  this machine's cores, or a remote Dask scheduler named by ``distributed.scheduler`` or the
  ``MGR_SCHEDULER`` environment variable. One task = one shard (a fixed range of tracks).
- :mod:`mgr.distributed.shards` -- the sharded spectrogram store (one HDF5 per shard, an index
  file whose ``/spec`` is an HDF5 virtual dataset over them, read through
  :class:`mgr.features.store.SpectrogramStore` unchanged) and the sharded feature table.
- :mod:`mgr.distributed.strategy` -- the ``tf.distribute`` strategy of ``train.distribution``
  and the ``train.mixed_precision`` policy.

Nothing here is imported by the default one-machine stages unless ``distributed.shard_tracks``
is set (docs/SCALE.md).
"""
