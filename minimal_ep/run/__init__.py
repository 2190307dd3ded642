"""The run machinery: configs, ``build_network``, data sets, training, checkpoints, the command line.

Nothing here is needed to read how EP works (that is the core, ``minimal_ep/*.py``); this is what
turns the core into experiments: :mod:`.config` (the settings, one dataclass per section),
:mod:`.build` (a network from its settings), :mod:`.datasets`, :mod:`.idx_files`, :mod:`.batches`
(MNIST and Fashion-MNIST), :mod:`.train` (the loop), :mod:`.checkpoints` and :mod:`.runs` (what a
run writes, and its rules), :mod:`.cli` (``minimal-ep``), :mod:`.gradcheck` and :mod:`.memory`
(the checks and the Table II memory measurement), :mod:`.campaign` (many runs in the background).
"""
