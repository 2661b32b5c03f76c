"""The bottom layer, stdlib only: atomic writes, the base InputError, LadderMeta, model/task facts.

Every other package may import this one; it imports nothing of ours.
"""
