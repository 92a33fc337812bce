"""Client for WeChat's servers: the mini-program API now, WeChat Pay v3 later."""
