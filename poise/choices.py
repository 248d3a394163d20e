"""The named choices of poise's settings, each defined once, in a module that imports nothing heavy: the
implementations take them from here and the command line offers them without loading torch (``poise --help``
in well under a second)."""

FUSIONS = ("concat", "mlp", "attention")  # poise.models.fusion
ENCODERS = ("lite", "paper")  # poise.models.pose: CPU-sized, or the papers' (VideoPose3D / Point Transformer / MetaFi++)
OPTIMIZERS = ("auto", "adam", "sgd")  # poise.optim: auto is the method's reference optimiser
NOISE_KINDS = ("raw", "unaligned", "unaligned_far")  # poise.continual.noise
EWC_MODES = ("none", "generic", "online", "adaptive")  # poise.continual.ewc: none, or what the Fisher protects
IMBALANCE_PRESETS = ("ranked", "weak-cluttered")  # poise.tasks.imbalance.PRESETS
PEERS = ("none", "coteaching", "dividemix")  # poise.continual.peers: a second network and its noisy-label rule
