"""Business rules as plain functions over the models: no Flask request objects here."""
