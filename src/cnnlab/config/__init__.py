"""The config's side of a run: composing it (job.py), the options of other libraries' classes
(declared.py), and which settings decide a result (settings.py)."""
