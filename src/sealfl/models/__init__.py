"""Models: numpy logistic regression and friends, independent of any transport."""

from sealfl.models.logreg import LogisticRegression as LogisticRegression
from sealfl.models.logreg import TrainConfig as TrainConfig
from sealfl.models.logreg import sigmoid as sigmoid

__all__ = ["LogisticRegression", "TrainConfig", "sigmoid"]
