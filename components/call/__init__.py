"""What a call is, whatever engine speaks it: the transcript and card, notices, the clock and the ending."""
