"""Models: numpy logistic regression and friends, independent of any transport."""
