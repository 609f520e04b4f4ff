"""The book harness: chapter parameters and profiles, the runner, the site, the command line.

It knows the papers only through each chapter's hooks (:data:`fairbook.book.chapters.HOOKS`); the
core and the papers never import it.
"""
