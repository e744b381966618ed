"""Constants of the reference protocol (no heavy imports: the CLI reads them for --help)."""

#: The reference experiment's seven optimizers.
REFERENCE_OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adagrad", "nadam")
#: The shared learning rate: Adam's default (Kingma & Ba 2015), used for every optimizer.
REFERENCE_LR = 1e-3
REFERENCE_BATCH_SIZE = 128
REFERENCE_TASK = "fmnist_cnn3"
#: Budget of the default run, chosen so that ``make run`` ends within 10 minutes on 2 CPU
#: cores including the install (measured; see README). The full protocol is 150 epochs on
#: all training data.
DEFAULT_EPOCHS = 3
DEFAULT_TRAIN_SIZE = 10_000
DEFAULT_SEEDS = 3
FULL_PROTOCOL_EPOCHS = 150
