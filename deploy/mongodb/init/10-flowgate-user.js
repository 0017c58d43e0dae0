// Runs once, when the mongodb container initialises an empty data volume
// (docker-entrypoint-initdb.d, as the root user of mongodb.env). Creates
// Flowgate's own user with readWrite on its database only: it can read and
// write documents and create its indexes, and cannot read other databases,
// manage users or change the replica set.
const dbName = process.env.FLOWGATE_MONGODB_DATABASE || 'flowgate';
const user = process.env.FLOWGATE_MONGO_USER;
const pwd = process.env.FLOWGATE_MONGO_PASSWORD;
if (!user || !pwd) {
  throw new Error('FLOWGATE_MONGO_USER and FLOWGATE_MONGO_PASSWORD must be set in deploy/env/mongodb.env');
}
db.getSiblingDB(dbName).createUser({
  user: user,
  pwd: pwd,
  roles: [{ role: 'readWrite', db: dbName }],
});
print('created the MongoDB user ' + user + ' (readWrite on ' + dbName + ')');
