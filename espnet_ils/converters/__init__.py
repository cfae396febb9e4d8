"""Checkpoint converters from other toolkits' layouts into the ILS-SSL modules."""
