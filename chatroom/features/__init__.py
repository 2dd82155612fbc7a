"""
Features that plug into the core: moderation and end-to-end encryption.
"""
