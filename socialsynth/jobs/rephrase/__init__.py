"""Privacy-preserving rephrasing (rephrase_posts.py): prompts, temperature search, the job, linkability audit."""
