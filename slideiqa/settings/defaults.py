"""The default verdict rule, in a module that imports nothing: the CLI needs these numbers for its
``--help`` before anything heavy is loaded (see :mod:`slideiqa.outputs.report` for the rule itself)."""

#: A tile scoring below this is low quality (the model thinks a defect more likely than not).
DEFAULT_THRESHOLD = 0.5
#: A slide fails when more of its tissue than this is low quality, under ink or unreadable.
DEFAULT_MAX_BAD_SHARE = 0.10
#: The usable-tissue mask's default scale (slideiqa/outputs/usable.py): about HistoQC's 1.25× masks, fine
#: enough to follow the tissue's outline, a 20 × 15 mm slide still only 2500 × 1875 px.
DEFAULT_USABLE_UM_PER_PX = 8.0
