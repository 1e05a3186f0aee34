"""The rtm2 command line."""
