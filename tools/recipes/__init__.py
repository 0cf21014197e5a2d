"""Recipes: the chain of tool runs that makes a shipped model, as data (`tiny_llava`), and the
runner that executes one resumably (`runner`)."""
