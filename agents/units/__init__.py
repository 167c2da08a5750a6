"""GAU code templates of the symbolic designer: small units it inserts around library units.

Each file is one GAU whose class and children carry placeholder names
(`InnerMixer`, `MixerA`, `BlockNorm`, ...); agents.mutations renames them to the
unit names of the design being built, so a template becomes ordinary unit code.
"""
