"""The web page's pieces: how a call is drawn (transcript and card) and how browsers reach the server (TURN)."""
