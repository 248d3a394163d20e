import sys; sys.path.insert(0, __import__("os").path.dirname(__file__))
import variant_label  # noqa
import variant_merge3  # noqa
