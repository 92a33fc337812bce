"""Clients for WeChat's servers: the mini-program API and WeChat Pay v3."""
