"""ml4ge: representation learning of biobank imaging data for genetics.

Importing ml4ge does not import Keras (``--help`` and tensorize stay fast). ml4ge's Keras classes (model families,
layers, losses) are registered with Keras as soon as Keras is imported, or at once if it already is, so a model
saved by ``--mode train`` loads with plain ``keras.saving.load_model`` after ``import ml4ge``. The hook is named
as a string, so the registering module is imported only then.
"""

import wrapt

__version__ = "0.1.0"

wrapt.register_post_import_hook("ml4ge.models.builtins:register_keras_objects", "keras")
