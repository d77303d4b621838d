"""The visitor's page: how a call is drawn (transcript and card), who the visitor is, what they take away, the
page's link preview, its public address and how browsers reach the server (TURN).

May import: adapters, call, restaurant, store, settings
"""
