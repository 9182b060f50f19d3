"""The Hugging Face Hub side of the library: resumable pulls, which file a repo spec means,
publishing with a generated model card.
"""
