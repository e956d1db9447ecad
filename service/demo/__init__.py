"""The embedded demo: a synthetic credit-risk model, published, served and replayed."""
