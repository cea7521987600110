"""The artist portal: server-rendered pages where artists sign up, register their works, say
what each allows, grant licences, see what touched their works and file claims. It calls the
same registry functions as the HTTP API; its login is a password and a browser session."""
