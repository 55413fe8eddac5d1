"""Merchants: the signed-in user creates one and becomes its owner; settings; suspension."""
