-- Manifest stores (a JPEG claim thumbnail, certificates, a signature) and local-feature
-- descriptors (binary ORB codes) do not compress: Postgres tried on every insert and stored
-- them whole anyway (stored size = raw size). EXTERNAL keeps them out of line without the
-- attempt, about 0.5 ms less per stamped output. Only new rows are affected; nothing is
-- rewritten.
ALTER TABLE outputs ALTER COLUMN manifest_bytes SET STORAGE EXTERNAL;
ALTER TABLE fingerprints ALTER COLUMN local_features SET STORAGE EXTERNAL;
