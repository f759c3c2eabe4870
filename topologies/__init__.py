"""The topic catalog and the flows (the order saga first) declared as data: checked, drawn, replayed."""
