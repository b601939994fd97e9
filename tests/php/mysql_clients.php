<?php
// Driven by tests/mysql_php.rs: PHP's mysqli and PDO (mysqlnd) through
// churnstile, connecting once per query as PHP pages do, with server-side
// prepared statements. Usage: php mysql_clients.php HOST PORT USER PASSWORD DB CYCLES
// Prints one "ok ..." line, or the first mismatch on stderr with exit code 1.

[, $host, $port, $user, $password, $db, $cycles] = $argv;
$port = (int) $port;
$cycles = (int) $cycles;
mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);

function expect_same($what, $expected, $seen)
{
    if ($expected !== $seen) {
        fwrite(STDERR, "$what: expected " . var_export($expected, true) . ", got " . var_export($seen, true) . "\n");
        exit(1);
    }
}

// mysqli: a connection per query, text protocol and a prepared statement.
for ($i = 0; $i < $cycles; $i++) {
    $mysqli = new mysqli($host, $user, $password, $db, $port);
    $row = $mysqli->query("SELECT $i + 1, DATABASE()")->fetch_row();
    expect_same("mysqli cycle $i", [(string) ($i + 1), $db], $row);
    $statement = $mysqli->prepare("SELECT CONCAT(?, '-', ?)");
    $label = "m$i";
    $statement->bind_param('si', $label, $i);
    $statement->execute();
    $statement->bind_result($joined);
    $statement->fetch();
    expect_same("mysqli prepared cycle $i", "m$i-$i", $joined);
    $statement->close();
    $mysqli->close();
}

// A mysqli statement executed again after moving to a server connection
// that never saw it: mysqlnd sends the parameter types with the first
// execute only, so churnstile must supply them there. Two holders take
// both server connections of the pool, then the one with the statement is
// kept busy.
$mysqli = new mysqli($host, $user, $password, $db, $port);
$statement = $mysqli->prepare('SELECT ? * 2, CONNECTION_ID()');
$value = 1;
$statement->bind_param('i', $value);
$statement->execute();
$statement->bind_result($doubled, $first_server);
$statement->fetch();
$statement->free_result();
$holders = [];
foreach ([0, 1] as $index) {
    $holder = new mysqli($host, $user, $password, $db, $port);
    $holder->begin_transaction();
    $id = (int) $holder->query('SELECT CONNECTION_ID()')->fetch_row()[0];
    $holders[$id] = $holder;
}
expect_same('holders on distinct connections', 2, count($holders));
$other = array_values(array_diff(array_keys($holders), [$first_server]))[0];
$holders[$other]->commit();
$value = 21;
$statement->execute();
$statement->bind_result($doubled, $second_server);
$statement->fetch();
expect_same('re-executed statement', 42, $doubled);
expect_same('server connection of the second execute', $other, $second_server);
foreach ($holders as $holder) {
    $holder->commit();
    $holder->close();
}
$statement->close();
$mysqli->close();

// PDO with server-side prepares, a connection per cycle.
$dsn = "mysql:host=$host;port=$port;dbname=$db";
$options = [
    PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
    PDO::ATTR_EMULATE_PREPARES => false,
];
for ($i = 0; $i < $cycles; $i++) {
    $pdo = new PDO($dsn, $user, $password, $options);
    $insert = $pdo->prepare('INSERT INTO php_rows (n, label) VALUES (?, ?)');
    $insert->execute([$i, "p$i"]);
    $id = $pdo->lastInsertId();
    $select = $pdo->prepare('SELECT n * 2, label, LAST_INSERT_ID() FROM php_rows WHERE id = ?');
    $select->execute([$id]);
    $row = $select->fetch(PDO::FETCH_NUM);
    expect_same("PDO cycle $i", [2 * $i, "p$i", (int) $id], $row);
    $pdo = null;
}

$pdo = new PDO($dsn, $user, $password, $options);
$count = $pdo->query('SELECT COUNT(*) FROM php_rows')->fetchColumn();
expect_same('rows PDO inserted', $cycles, (int) $count);
echo "ok mysqli=$cycles pdo=$cycles\n";
