"""The report of a trained model (`python -m train.report`): its passes, page and learning curves.

Imports common, the top of train and every other room of it."""
