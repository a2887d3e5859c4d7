"""The rules of subscriptions, without I/O: topics and their filters, the criteria a
partner writes, the channel settings, the retry schedule and the notification Bundle."""
