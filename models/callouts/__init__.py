"""Benefit callouts: Bayesian bandits (Thompson sampling with empirical-Bayes meta-priors, a contextual
Bayesian logistic model), layouts with pairwise component interactions, and off-policy evaluation."""
