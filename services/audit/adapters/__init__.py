"""The audit service's I/O: the trail's tables and the projections that fill them."""
