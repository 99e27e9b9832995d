"""slideiqa's training library: datasets from folders, the paper's protocol, transfer learning.

Installed as ``slideiqa_training`` (the repository folder is ``training/``) with the ``training``
extra; its command line is ``slideiqa-train``.
"""
