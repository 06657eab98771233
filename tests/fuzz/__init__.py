"""Coverage-guided fuzzing (atheris) of every decoder of outside bytes; see ``README.md`` here."""
