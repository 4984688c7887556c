"""The six classifiers of MLDS's Table 2, the repeated 80/20 splits, and their scores.

Why here and fixed: a study's numbers depend on every choice below, so they are made once and
recorded in the study's JSON. Scaling sits inside each pipeline (fit on the training fold only)
where the classifier is scale-sensitive (SVM, MLP); trees, forests, boosting and naive Bayes are
not. Splits are stratified (``StratifiedShuffleSplit``), or grouped by twin (``GroupShuffleSplit``)
when DS1 and DS2 networks share seeds (``mlds.analysis.pairs``). Every split reports accuracy and
ROC AUC (DS2 = trojaned is the positive class), the detector score of the Trojan Detection
Challenge and TrojAI.
"""

import warnings
from dataclasses import dataclass

import numpy as np

CLASSIFIERS = ("svm", "decision_tree", "random_forest", "mlp", "adaboost", "naive_bayes")


def make_classifier(name, seed):
    """A fresh scikit-learn estimator ``name`` (one of ``CLASSIFIERS``) seeded with ``seed``."""
    from sklearn.ensemble import AdaBoostClassifier, RandomForestClassifier
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    makers = {
        "svm": lambda: make_pipeline(StandardScaler(), SVC(kernel="rbf", C=1.0, gamma="scale")),
        "decision_tree": lambda: DecisionTreeClassifier(random_state=seed),
        "random_forest": lambda: RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1),
        "mlp": lambda: make_pipeline(StandardScaler(), MLPClassifier((64,), max_iter=500, random_state=seed)),
        "adaboost": lambda: AdaBoostClassifier(n_estimators=50, random_state=seed),
        "naive_bayes": lambda: GaussianNB(),
    }
    if name not in makers:
        raise ValueError(f"unknown classifier {name!r}; known: {', '.join(CLASSIFIERS)}")
    return makers[name]()


def splits(labels, groups, seeds, test_size=0.2):
    """``[(train rows, test rows)]``, one per seed ``0 .. seeds-1``: stratified, or grouped when ``groups``."""
    from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit

    rows = np.zeros((len(labels), 1))
    if groups is None:
        return [next(StratifiedShuffleSplit(1, test_size=test_size, random_state=s).split(rows, labels)) for s in range(seeds)]
    return [next(GroupShuffleSplit(1, test_size=test_size, random_state=s).split(rows, labels, groups)) for s in range(seeds)]


@dataclass(frozen=True)
class Scores:
    """One classifier's accuracy and ROC AUC on each split's test fold."""

    accuracy: tuple
    auc: tuple

    @property
    def mean(self):
        return float(np.mean(self.accuracy))

    @property
    def std(self):
        return float(np.std(self.accuracy))

    def to_dict(self):
        known = [a for a in self.auc if not np.isnan(a)]
        return {"accuracy": list(self.accuracy), "auc": list(self.auc), "mean": self.mean, "std": self.std,
                "auc_mean": float(np.mean(known)) if known else float("nan"),
                "auc_std": float(np.std(known)) if known else float("nan")}  # fmt: skip


def evaluate(features, labels, fold_list, names=CLASSIFIERS):
    """``{classifier: Scores}`` over ``fold_list`` (classifier seed = the split's number)."""
    return {name: _scores(name, features, labels, fold_list) for name in names}


def fitted_models(name, features, labels, fold_list):
    """``(model, test rows)`` per split: classifier ``name`` (seed = the split's number) fitted on
    the split's training rows."""
    for seed, (train, test) in enumerate(fold_list):
        model = make_classifier(name, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLP convergence and constant-feature warnings: the score says enough
            model.fit(features[train], labels[train])
        yield model, test


def _scores(name, features, labels, fold_list):
    """Accuracy per split, and ROC AUC where the labels are two classes (NaN for more)."""
    accuracy, auc = [], []
    binary = len(np.unique(labels)) == 2
    for model, test in fitted_models(name, features, labels, fold_list):
        accuracy.append(float(np.mean(model.predict(features[test]) == labels[test])))
        auc.append(_auc(labels[test], _detector_score(model, features[test])) if binary else float("nan"))
    return Scores(tuple(accuracy), tuple(auc))


def _detector_score(model, features):
    if hasattr(model, "decision_function"):
        return model.decision_function(features)
    return model.predict_proba(features)[:, 1]


def _auc(labels, score):
    from sklearn.metrics import roc_auc_score

    if len(np.unique(labels)) < 2:
        return float("nan")  # a grouped fold may hold one class only
    return float(roc_auc_score(labels, score))
